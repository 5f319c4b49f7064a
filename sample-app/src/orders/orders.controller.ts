import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { OrdersService, Payment } from './orders.service';

@Controller('orders')
export class OrdersController {
  constructor(private readonly orders: OrdersService) {}

  @Post(':id/pay')
  pay(@Param('id') id: string, @Body() body: { amount?: number }): Promise<Payment> {
    return this.orders.pay(id, Number(body?.amount ?? 0));
  }

  @Get(':id')
  find(@Param('id') id: string): Promise<Payment> {
    return this.orders.find(id);
  }
}
